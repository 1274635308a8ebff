# Quickstart: one domain whose DNS is at Cloudflare, one server at OVH (which
# also sets the reverse DNS of its addresses), two mailboxes.
#
# Secrets come from the environment:
#   CLOUDFLARE_API_TOKEN, OVH_APPLICATION_KEY, OVH_APPLICATION_SECRET,
#   OVH_CONSUMER_KEY.

provider "cloudflare" "main" {
  api_token = env("CLOUDFLARE_API_TOKEN")
}

provider "ovh" "eu" {
  endpoint           = "ovh-eu"
  application_key    = env("OVH_APPLICATION_KEY")
  application_secret = env("OVH_APPLICATION_SECRET")
  consumer_key       = env("OVH_CONSUMER_KEY")
}

server "mx1" {
  hostname = "mx1.example.org" # EHLO name, TLS name, A/AAAA and PTR target
  ipv4     = "203.0.113.10"
  ipv6     = "2001:db8::10"
  ptr      = provider.ovh.eu # who sets reverse DNS for these addresses

  ssh {
    user        = "root"
    known_hosts = "~/.ssh/known_hosts" # ssh-keyscan 203.0.113.10 >> ~/.ssh/known_hosts
  }

  tls {
    acme_email = "admin@example.org" # Let's Encrypt
  }
}

domain "example.org" {
  dns    = provider.cloudflare.main
  server = server.mx1

  dkim {
    selector = "mx1-2026"
  }
  spf {
    all = "~all"
  }
  dmarc {
    policy = "none"
    rua    = ["mailto:dmarc@example.org"]
  }
  mta_sts {
    mode = "testing"
  }
  tls_rpt {
    rua = ["mailto:tlsrpt@example.org"]
  }
}

# Password hashes come from `mailctl passwd`. These are the hashes of
# "quickstart-alice-password" and "quickstart-bob-password": replace them
# before any real use.
user "alice@example.org" {
  name          = "Alice Martin"
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$2ESdU+WHRaTGzhBXrvgXYw$cEMAGox+6VQdr9pDR0VyWK+wOcVkObqkA5ioRMTMn4E"
  aliases       = ["contact@example.org", "dmarc@example.org", "tlsrpt@example.org"]
  quota         = "10GiB"
}

user "bob@example.org" {
  name          = "Bob Durand"
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$izUAHwkQbWHVuG6es5K0ew$+wVlbNRsn5aVztTNWOn81VAhL9H+K8JEX9sBoW7P6fU"
}

alias "postmaster@example.org" {
  to = ["alice@example.org"]
}
