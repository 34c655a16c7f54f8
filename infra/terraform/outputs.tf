output "sqs_queue_url_prefix" {
  description = "MOAT_SQS_QUEUE_URL_PREFIX: the scan queue's URL without its last segment's scan"
  value       = trimsuffix(aws_sqs_queue.queue["scan"].url, "scan")
}

output "s3_bucket" {
  description = "MOAT_S3_BUCKET"
  value       = aws_s3_bucket.messages.id
}

output "kms_key_arn" {
  description = "MOAT_S3_SSE_KMS_KEY_ID (with MOAT_S3_SSE=aws:kms)"
  value       = aws_kms_key.messages.arn
}

output "moat_role_arn" {
  description = "Helm value serviceAccount.annotations.eks.amazonaws.com/role-arn"
  value       = aws_iam_role.moat.arn
}

output "db_endpoint" {
  description = "host:port for DATABASE_URL"
  value       = aws_db_instance.moat.endpoint
}

output "db_master_secret_arn" {
  description = "Secrets Manager secret holding the database password"
  value       = aws_db_instance.moat.master_user_secret[0].secret_arn
}
