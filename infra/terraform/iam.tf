# One role for Moat's pods (IRSA), allowed exactly what the code calls: SQS receive, send, delete,
# change visibility and queue attributes on its own queues; S3 object get, put, delete and list
# on its own bucket; the KMS key for that bucket. No queue or bucket creation.
data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.eks_oidc_provider_url}:sub"
      values   = ["system:serviceaccount:${var.k8s_namespace}:${var.k8s_service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.eks_oidc_provider_url}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "moat" {
  name               = "${var.name}-pods"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "moat" {
  statement {
    sid = "Queues"
    actions = [
      "sqs:SendMessage",
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = concat(
      [for q in aws_sqs_queue.queue : q.arn],
      [for q in aws_sqs_queue.dead : q.arn],
    )
  }
  statement {
    sid       = "Objects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.messages.arn}/*"]
  }
  statement {
    sid       = "List"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.messages.arn]
  }
  statement {
    sid       = "Key"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.messages.arn]
  }
}

resource "aws_iam_role_policy" "moat" {
  name   = "${var.name}-queues-and-messages"
  role   = aws_iam_role.moat.id
  policy = data.aws_iam_policy_document.moat.json
}
