# The local lab: a complete mail setup on this machine, with no credentials
# and no root. `apply` starts the server in the background;
# its pid file, logs, data and the zone file live under .mailctl/ here.
#
#   mailctl -chdir examples/local apply -auto-approve
#   mailctl -chdir examples/local verify
#   mailctl -chdir examples/local destroy -auto-approve

# DNS: a zone file, examples/local/.mailctl/zones/example.test.zone.
provider "zonefile" "lab" {
  dir = ".mailctl/zones"
}

server "lab" {
  hostname = "mail.example.test"
  ipv4     = "127.0.0.1"

  # Run here, as a child process, instead of deploying over SSH.
  local {
    dir = ".mailctl"
  }

  # Unprivileged ports, so that no root is needed.
  ports {
    smtp        = 2525 # MX
    submission  = 2587 # STARTTLS
    submissions = 2465 # implicit TLS
    imap        = 2143 # STARTTLS
    imaps       = 2993
    https       = 2443 # MTA-STS, autoconfig, health, metrics
    http        = 0    # no plain HTTP: port 80 would need root
  }

  tls {
    self_signed = true
  }
}

domain "example.test" {
  dns    = provider.zonefile.lab
  server = server.lab
}

# Lab passwords: lab-alice-password and lab-bob-password (hashes made with
# `mailctl passwd`).
user "alice@example.test" {
  name          = "Alice (lab)"
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$UeSV5v4pRDM98iMYybgzlw$uJxSGKfVS7hCRQQqAKRIqHwmZPaZMYJKdD0YoceRU1I"
}

user "bob@example.test" {
  name          = "Bob (lab)"
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$qre63COCo+TU05VA33fi3Q$aIjCjAD7NKgALicGapaToJcekprVaqV9Z5EyZMrsZgQ"
}

alias "postmaster@example.test" {
  to = ["alice@example.test"]
}

alias "abuse@example.test" { # RFC 2142: verify checks both exist
  to = ["alice@example.test"]
}
