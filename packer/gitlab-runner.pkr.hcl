# A golden image for GitLab Runner shell-executor hosts, built with Packer's
# amazon-chroot builder (on an EC2 build machine, as root). The image gets
# gitlab-runner, Docker Engine, the docker group, overlay and the storage
# driver, and no registration and no machine identity; each instance
# registers at boot (runner-provision's cloud-init user data, or a unit of
# your own running `runner-provision apply --token-file …`).
#
# Checked by `packer validate` in the tests (Debian's packer 1.6.6); never
# built there (no AWS). root-apply.sh, which does the work, is what the
# real-host tier's golden_image scenario runs.
#
#   packer build -var profile=fleet.toml gitlab-runner.pkr.hcl

variable "region" {
  type    = string
  default = "eu-central-1"
}

variable "profile" {
  type        = string
  description = "runner-provision profile for the fleet (no token in it)"
  default     = "fleet.toml"
}

variable "runner_provision" {
  type        = string
  description = "the runner-provision binary on the build machine"
  default     = "/usr/local/sbin/runner-provision"
}

source "amazon-chroot" "runner" {
  region      = var.region
  ami_name    = "gitlab-runner-shell-docker-{{timestamp}}"
  ena_support = true
  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"] # Debian's cloud team
    most_recent = true
  }
  # Runs on the build machine once the new volume is mounted: the tool and
  # the profile go into the image (instances run them at boot), then the
  # image is provisioned from outside with --root.
  post_mount_commands = [
    "install -D -m 0755 ${var.runner_provision} {{.MountPath}}/usr/local/sbin/runner-provision",
    "install -D -m 0644 ${var.profile} {{.MountPath}}/etc/runner-provision/profile.toml",
    "RUNNER_PROVISION=${var.runner_provision} sh ${path.root}/root-apply.sh {{.MountPath}} --profile ${var.profile} apply --accept-docker-group-risk",
  ]
}

build {
  sources = ["source.amazon-chroot.runner"]
}
