variable "name" {
  type = string
}

variable "instance_count" {
  type    = number
  default = 1
}

variable "tier" {
  type    = string
  default = "dev"
}

variable "enable_logs" {
  type    = bool
  default = false
}

variable "ade_env_name" {
  type    = string
  default = ""
}

resource "terraform_data" "app" {
  input = {
    name = var.name
    tier = var.tier
  }
}

resource "terraform_data" "instance" {
  count = var.instance_count
  input = "${var.name}-${count.index}"
}

output "app_name" {
  value = var.name
}

output "app_id" {
  value = terraform_data.app.id
}

output "instance_count" {
  value = var.instance_count
}

output "logs_enabled" {
  value = var.enable_logs
}

output "instances" {
  value = terraform_data.instance[*].output
}

output "labels" {
  value = {
    tier        = var.tier
    environment = var.ade_env_name
  }
}
