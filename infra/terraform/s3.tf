# Raw messages (inbound/YYYY/MM/DD/<queue id>.eml) and the archive, encrypted at rest, private.
resource "aws_kms_key" "messages" {
  description             = "${var.name}: raw messages and archive"
  enable_key_rotation     = true
  deletion_window_in_days = 30
}

resource "aws_s3_bucket" "messages" {
  bucket_prefix = "${var.name}-messages-"
}

resource "aws_s3_bucket_public_access_block" "messages" {
  bucket                  = aws_s3_bucket.messages.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "messages" {
  bucket = aws_s3_bucket.messages.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "messages" {
  bucket = aws_s3_bucket.messages.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.messages.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "messages" {
  bucket = aws_s3_bucket.messages.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "messages" {
  bucket = aws_s3_bucket.messages.id

  rule {
    id     = "raw-messages-expire"
    status = "Enabled"
    filter {
      prefix = "inbound/"
    }
    expiration {
      days = var.raw_message_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
  }

  rule {
    id     = "archive-to-infrequent-access"
    status = "Enabled"
    filter {
      prefix = "archive/"
    }
    transition {
      days          = 30
      storage_class = "STANDARD_IA"
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
  }

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

# TLS only
resource "aws_s3_bucket_policy" "messages" {
  bucket = aws_s3_bucket.messages.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.messages.arn, "${aws_s3_bucket.messages.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
}
