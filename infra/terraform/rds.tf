# PostgreSQL for state (tenants, messages, events, the PostgreSQL queue when MOAT_QUEUE=postgres,
# and the outbox when MOAT_QUEUE=sqs). The password is managed by RDS in Secrets Manager; build
# DATABASE_URL from it into the Kubernetes Secret (Helm value existingSecret).
resource "aws_db_subnet_group" "moat" {
  name       = var.name
  subnet_ids = var.private_subnet_ids
}

resource "aws_security_group" "db" {
  name   = "${var.name}-db"
  vpc_id = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "db" {
  for_each                     = toset(var.db_allowed_security_group_ids)
  security_group_id            = aws_security_group.db.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_db_parameter_group" "moat" {
  name   = var.name
  family = "postgres16"
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
}

resource "aws_db_instance" "moat" {
  identifier                    = var.name
  engine                        = "postgres"
  engine_version                = "16"
  instance_class                = var.db_instance_class
  allocated_storage             = var.db_allocated_storage_gb
  max_allocated_storage         = var.db_allocated_storage_gb * 10
  storage_type                  = "gp3"
  storage_encrypted             = true
  db_name                       = "moat"
  username                      = "moat"
  manage_master_user_password   = true
  multi_az                      = true
  db_subnet_group_name          = aws_db_subnet_group.moat.name
  vpc_security_group_ids        = [aws_security_group.db.id]
  parameter_group_name          = aws_db_parameter_group.moat.name
  backup_retention_period       = 14
  deletion_protection           = true
  performance_insights_enabled  = true
  auto_minor_version_upgrade    = true
  copy_tags_to_snapshot         = true
  final_snapshot_identifier     = "${var.name}-final"
  publicly_accessible           = false
}
