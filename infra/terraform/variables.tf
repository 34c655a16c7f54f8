variable "region" {
  description = "AWS region for every resource"
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Prefix of every resource name; the SQS queues are <name>-scan, <name>-deliver and their -dead queues"
  type        = string
  default     = "moat"
}

variable "max_receives" {
  description = "Receives before a job moves to its dead-letter queue (MOAT_QUEUE_MAX_RECEIVES)"
  type        = number
  default     = 10
}

variable "vpc_id" {
  description = "VPC of the EKS cluster; RDS is placed in its private subnets"
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets for the RDS subnet group"
  type        = list(string)
}

variable "db_allowed_security_group_ids" {
  description = "Security groups (the EKS nodes or pods) allowed to reach PostgreSQL on 5432"
  type        = list(string)
}

variable "db_instance_class" {
  description = "RDS instance class"
  type        = string
  default     = "db.r6g.large"
}

variable "db_allocated_storage_gb" {
  description = "Initial storage; autoscaling may grow it to 10 times this"
  type        = number
  default     = 100
}

variable "eks_oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (for IRSA)"
  type        = string
}

variable "eks_oidc_provider_url" {
  description = "URL of that provider without https://, e.g. oidc.eks.eu-west-1.amazonaws.com/id/ABC"
  type        = string
}

variable "k8s_namespace" {
  description = "Namespace of the Helm release"
  type        = string
  default     = "moat"
}

variable "k8s_service_account" {
  description = "Service account of Moat's pods (Helm value serviceAccount.name)"
  type        = string
  default     = "moat"
}

variable "raw_message_days" {
  description = "Raw messages under inbound/ are deleted this many days after they were stored (quarantine and retries are far shorter)"
  type        = number
  default     = 30
}
