# One queue per stage with its dead-letter queue. Moat's SqsQueue long-polls, extends visibility
# while a job runs, and re-sends delays longer than 15 minutes; the queue defaults below match it.
locals {
  queues = toset(["scan", "deliver"])
}

resource "aws_sqs_queue" "dead" {
  for_each                  = local.queues
  name                      = "${var.name}-${each.key}-dead"
  message_retention_seconds = 1209600 # 14 days, the maximum: time to look at what failed
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "queue" {
  for_each                   = local.queues
  name                       = "${var.name}-${each.key}"
  visibility_timeout_seconds = 300    # MOAT_SCAN/DELIVER_VISIBILITY_SECONDS; Moat sets it per receive too
  receive_wait_time_seconds  = 20     # long polling
  message_retention_seconds  = 604800 # 7 days: longer than MOAT_RETRY_GIVE_UP_SECONDS (5 days)
  max_message_size           = 262144 # jobs are references; Moat refuses anything bigger
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead[each.key].arn
    maxReceiveCount     = var.max_receives
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dead" {
  for_each  = local.queues
  queue_url = aws_sqs_queue.dead[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.queue[each.key].arn]
  })
}
