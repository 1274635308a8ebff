# Moving a Google Workspace domain to mailctl without losing mail.
#
# example.org's DNS is at Cloudflare and its mail at Google. The migration
# block copies each mailbox over IMAP (mailctl migrate) and, phase by phase,
# moves the DNS: see README.md for the runbook.
#
# Secrets come from the environment:
#   CLOUDFLARE_API_TOKEN
#   ALICE_GOOGLE_APP_PASSWORD   an app password of alice's Google account
#   ALICE_PASSWORD, BOB_PASSWORD the new mailboxes' passwords (for the copy)

provider "cloudflare" "main" {
  api_token = env("CLOUDFLARE_API_TOKEN")
}

server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"

  ssh {
    known_hosts = "~/.ssh/known_hosts" # ssh-keyscan 203.0.113.10 >> ~/.ssh/known_hosts
  }

  tls {
    acme_email = "admin@example.org"
  }
}

domain "example.org" {
  dns    = provider.cloudflare.main
  server = server.mx1

  dkim {
    selector = "mx1-2026" # Google's own selector (google._domainkey) is left alone
  }
  dmarc {
    policy = "none" # raise to quarantine, then reject, after phase = "done"
    rua    = ["mailto:dmarc@example.org"]
  }
  mta_sts {
    mode = "testing" # raise to enforce after phase = "done"
  }
  tls_rpt {
    rua = ["mailto:tlsrpt@example.org"]
  }
}

# Hashes of "migration-alice-password" and "migration-bob-password": replace
# them with your own from `mailctl passwd`.
user "alice@example.org" {
  name          = "Alice Martin"
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$PbG2UYbVKi3STsD4SU96XA$aucbAOy3+y6tcep17y3awj0oMjuE2yLx87ipYNhJs2w"
  aliases       = ["postmaster@example.org", "dmarc@example.org", "tlsrpt@example.org"]
}

user "bob@example.org" {
  name          = "Bob Durand"
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$FS66lNl+qw08LZBejUR/wQ$e/wAwB9UqezT84RfJ05H93rD8pJlNIG2lrlQZ9Q1GUI"
}

migration "google" {
  phase = "presync" # then "cutover", then "done"

  # source { address = "imap.gmail.com:993" } is the default.

  user "alice@example.org" {
    password        = env("ALICE_GOOGLE_APP_PASSWORD")
    target_password = env("ALICE_PASSWORD")
  }
  user "bob@example.org" {
    oauth2_token_command = "gcloud auth print-access-token bob@example.org" # XOAUTH2
    target_password      = env("BOB_PASSWORD")
  }

  folders = { "Clients/ACME" = "ACME" } # on top of [Gmail]/Sent Mail -> Sent, ...
  exclude = ["[Gmail]/Important", "[Gmail]/Starred", "Newsletters/*"]
}
