# mail.hcl: the mail setup of example.test, written by "mailctl init".
#
# Every *.hcl file of this directory is read and merged. Run
#   mailctl validate   to check this file (no network),
#   mailctl plan       to see what would change (DNS records, PTR, server),
#   mailctl apply      to make it so, then verify the result.
# Secrets never live in this file: env("NAME") reads them from the
# environment when mailctl runs. The full reference is docs/config.md.

# Who hosts the DNS zone of example.test. mailctl only touches the mail records
# (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, autoconfig, SRV), never the others.
#
# Writes zones/example.test.zone for a name server that you run yourself
# (Knot, BIND, NSD): mailctl keeps the records it owns up to date in it.
provider "zonefile" "main" {
  dir = "zones"
}

# The mail server: the same mailctl binary, deployed over SSH and run as
# "mailctl serve".
server "mail" {
  hostname = "mail.example.test" # EHLO name, TLS certificate name, A/AAAA and PTR target
  ipv4     = "127.0.0.1"

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
    acme_email = "postmaster@example.test"
  }

  # To send through a smarthost (SES, Mailgun...) instead of delivering
  # directly, uncomment:
  # relay {
  #   address  = "email-smtp.eu-west-1.amazonaws.com:587"
  #   username = env("RELAY_USER")
  #   password = env("RELAY_PASSWORD")
  # }
}

domain "example.test" {
  dns    = provider.zonefile.main
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
    rua    = ["mailto:postmaster@example.test"]
  }
  # MTA-STS (RFC 8461): "testing" first, "enforce" when the reports are clean.
  mta_sts {
    mode = "testing"
  }
  # TLS reporting (RFC 8460).
  tls_rpt {
    rua = ["mailto:postmaster@example.test"]
  }
}

# A mailbox. The password_hash below is a placeholder that no password
# matches (validate warns about it). Run "mailctl passwd", type the real
# password and paste the printed hash here.
user "admin@example.test" {
  name          = "Administrator"
  password_hash = "<HASH>"
  quota         = "10GiB"
}

# Required by RFC 5321: mail to postmaster must reach a person.
alias "postmaster@example.test" {
  to = ["admin@example.test"]
}
