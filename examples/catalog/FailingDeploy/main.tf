variable "reason" {
  type = string
}

resource "terraform_data" "created_first" {
  input = "state is kept even when the deployment fails"
}

resource "terraform_data" "fails" {
  input = var.reason
  depends_on = [terraform_data.created_first]

  lifecycle {
    precondition {
      condition     = terraform_data.created_first.output == "never"
      error_message = "Deployment failed: ${var.reason}."
    }
  }
}
