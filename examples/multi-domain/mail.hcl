# Three domains on one server, their DNS at two providers: Cloudflare for
# example.org and example.net, a Knot/BIND name server updated with RFC 2136
# for example.com. Outbound mail leaves through a smarthost (relay block).
#
# Secrets come from the environment:
#   CLOUDFLARE_API_TOKEN, TSIG_SECRET, HCLOUD_TOKEN, RELAY_USER, RELAY_PASSWORD.

provider "cloudflare" "main" {
  api_token = env("CLOUDFLARE_API_TOKEN")
}

provider "rfc2136" "home" { # any RFC 2136 server: BIND, Knot, PowerDNS
  server    = "ns1.example.com:53"
  tsig_name = "mailctl."
  tsig_alg  = "hmac-sha256"
  tsig_key  = env("TSIG_SECRET")
}

provider "hetzner" "cloud" { # reverse DNS of the server's addresses
  token = env("HCLOUD_TOKEN")
}

server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.20"
  ipv6     = "2001:db8::20"
  ptr      = provider.hetzner.cloud

  ssh {
    address  = "203.0.113.20:2222"
    user     = "deploy"
    host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJBX0uj0QsSH5MbAebdP0GkMlCtkCRfEtlIXJDac4lUe"
    identity = "~/.ssh/id_ed25519"
  }

  tls {
    acme_email = "hostmaster@example.org"
  }

  relay {
    address  = "email-smtp.eu-west-1.amazonaws.com:587"
    username = env("RELAY_USER")
    password = env("RELAY_PASSWORD")
  }
}

domain "example.org" {
  dns    = provider.cloudflare.main
  server = server.mx1

  dkim {
    selector = "mx1-2026"
  }
  spf {
    include = ["amazonses.com"] # the relay sends for us too
    all     = "-all"
  }
  dmarc {
    policy = "quarantine"
    rua    = ["mailto:dmarc@example.org"]
  }
  mta_sts {
    mode = "enforce"
  }
  tls_rpt {
    rua = ["mailto:tlsrpt@example.org"]
  }
}

domain "example.net" {
  dns    = provider.cloudflare.main
  server = server.mx1

  spf {
    include = ["amazonses.com"]
  }
  dmarc {
    policy = "none"
    rua    = ["mailto:dmarc@example.org"]
  }
}

domain "example.com" {
  dns    = provider.rfc2136.home
  server = server.mx1

  spf {
    include = ["amazonses.com"]
  }
  dmarc {
    policy = "reject"
  }
}

# Password hashes come from `mailctl passwd`. These are the hashes of
# "multi-alice-password", "multi-bob-password" and "multi-carol-password":
# replace them before any real use.
user "alice@example.org" {
  name          = "Alice Martin"
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$qft1ahf6SD0FpUGutbEDjg$FaEYfMLRP56HhWFrJw8LNAjZfkAG/K5hb3pkFfqL/2Q"
  aliases       = ["alice@example.net", "dmarc@example.org", "tlsrpt@example.org"]
  quota         = "20GiB"
}

user "bob@example.com" {
  name          = "Bob Durand"
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$e1aM86nHN1ticfc9HSjLog$ONZslQL3awaGWvgDlUZvsnMLRuwDA6frWZR/O8MFezE"
  quota         = "5GiB"
}

user "carol@example.net" {
  name          = "Carol Petit"
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$DaiWdHcI41pp2xbZJBXBsg$R4V63VdthWT5RWZQLG0jMVLJPtnNTaICIhWwbKakSuc"
}

alias "postmaster@example.org" { to = ["alice@example.org"] }
alias "postmaster@example.net" { to = ["alice@example.org"] }
alias "postmaster@example.com" { to = ["alice@example.org"] }
alias "sales@example.com" { to = ["bob@example.com", "carol@example.net"] }
alias "@example.net" { to = ["carol@example.net"] } # catch-all
