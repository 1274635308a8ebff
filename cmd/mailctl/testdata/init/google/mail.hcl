# mail.hcl: the mail setup of example.org, written by "mailctl init".
#
# Every *.hcl file of this directory is read and merged. Run
#   mailctl validate   to check this file (no network),
#   mailctl plan       to see what would change (DNS records, PTR, server),
#   mailctl apply      to make it so, then verify the result.
# Secrets never live in this file: env("NAME") reads them from the
# environment when mailctl runs. The full reference is docs/config.md.

# Who hosts the DNS zone of example.org. mailctl only touches the mail records
# (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, autoconfig, SRV), never the others.
#
# An API token with the Zone:DNS:Edit permission on the zone.
provider "cloudflare" "main" {
  api_token = env("CLOUDFLARE_API_TOKEN")
}

# The mail server: the same mailctl binary, deployed over SSH and run as
# "mailctl serve".
server "mail" {
  hostname = "mail.example.org" # EHLO name, TLS certificate name, A/AAAA and PTR target
  ipv4     = "203.0.113.10"

  # Reverse DNS (PTR) of the IP addresses, set through your hosting
  # provider's API. Without it, many receivers treat your mail as spam.
  # For a server at Hetzner Cloud, declare
  #   provider "hetzner" "cloud" { token = env("HCLOUD_TOKEN") }
  # and uncomment (or set the PTR in your hosting panel):
  # ptr = provider.hetzner.cloud

  ssh {
    user        = "root"
    known_hosts = "~/.ssh/known_hosts" # the server's key must be in it
    # Or pin the key: host_key = "ssh-ed25519 AAAA..." (ssh-keyscan prints it).
    # The address defaults to the IPv4 address, port 22; the identity to
    # ssh-agent, then ~/.ssh/id_*.
  }

  tls {
    # Certificates from Let's Encrypt, renewed automatically. Or give
    # cert_file and key_file.
    acme_email = "postmaster@example.org"
  }

  # To send through a smarthost (SES, Mailgun...) instead of delivering
  # directly, uncomment:
  # relay {
  #   address  = "email-smtp.eu-west-1.amazonaws.com:587"
  #   username = env("RELAY_USER")
  #   password = env("RELAY_PASSWORD")
  # }
}

domain "example.org" {
  dns    = provider.cloudflare.main
  server = server.mail

  # DKIM signing keys are generated on the server (an ed25519 and an
  # rsa-2048 key); their public halves are published under this selector.
  dkim {
    selector = "mail-2026"
  }
  # SPF: the server's addresses are included; "~all" soft-fails the rest.
  # Switch to "-all" once everything sends through this server.
  spf {
    all = "~all"
  }
  # DMARC: start with "none" and read the reports, then move to
  # "quarantine" and "reject".
  dmarc {
    policy = "none"
    rua    = ["mailto:postmaster@example.org"]
  }
  # MTA-STS (RFC 8461): "testing" first, "enforce" when the reports are clean.
  mta_sts {
    mode = "testing"
  }
  # TLS reporting (RFC 8460).
  tls_rpt {
    rua = ["mailto:postmaster@example.org"]
  }
}

# A mailbox. The password_hash below is a placeholder that no password
# matches (validate warns about it). Run "mailctl passwd", type the real
# password and paste the printed hash here.
user "admin@example.org" {
  name          = "Administrator"
  password_hash = "<HASH>"
  quota         = "10GiB"
}

# Required by RFC 5321: mail to postmaster must reach a person.
alias "postmaster@example.org" {
  to = ["admin@example.org"]
}

# example.org receives its mail at Google Workspace today. This migration
# moves it without losing any. In phase "presync" the MX stay where they
# are (their TTL is lowered) while "mailctl migrate" copies the mailboxes;
# then set phase = "cutover", plan, apply (the MX move to this server) and
# migrate again for what arrived meanwhile; then phase = "done".
# Without this block, plan warns and apply refuses to move the MX.
# Runbook: the migration section of docs/config.md.
migration "google" {
  phase = "presync"

  # source { address = "imap.gmail.com:993" } is the default.

  # One block per mailbox to copy. password: the account's password at
  # Google Workspace (an app password; or oauth2_token_command for XOAUTH2).
  # target_password: the password behind the user's password_hash above.
  user "admin@example.org" {
    password        = env("ADMIN_SOURCE_PASSWORD")
    target_password = env("ADMIN_PASSWORD")
  }
}
