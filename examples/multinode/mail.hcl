# Two mail servers on this machine sharing one PostgreSQL store: every
# server is an MX of example.test and serves IMAP for every user. Each
# runs as a child process (local block), on its own loopback address.
#
#   MAILCTL_PG_PASSWORD=... mailctl -chdir examples/multinode apply -auto-approve
#   mailctl -chdir examples/multinode destroy -auto-approve

provider "zonefile" "lab" {
  dir = ".mailctl/zones"
}

server "a" {
  hostname = "a.example.test"
  ipv4     = "127.0.0.2"

  local {
    dir = ".a"
  }

  ports {
    smtp        = 3525
    submission  = 3587
    submissions = 3465
    imap        = 3143
    imaps       = 3993
    https       = 3443
    http        = 0
  }

  tls {
    self_signed = true
  }

  # The password comes from the environment: the URL is a secret, written
  # to .a/postgres-url (mode 0600), never to server.json or a plan.
  store {
    postgres = "postgres://mailctl:${env("MAILCTL_PG_PASSWORD")}@127.0.0.1:5432/mailctl"
  }
}

server "b" {
  hostname = "b.example.test"
  ipv4     = "127.0.0.3"

  local {
    dir = ".b"
  }

  ports {
    smtp        = 3525
    submission  = 3587
    submissions = 3465
    imap        = 3143
    imaps       = 3993
    https       = 3443
    http        = 0
  }

  tls {
    self_signed = true
  }

  store {
    postgres = "postgres://mailctl:${env("MAILCTL_PG_PASSWORD")}@127.0.0.1:5432/mailctl"
  }
}

domain "example.test" {
  dns = provider.zonefile.lab

  # Both are MX with equal preference; mx_priority = { a = 10, b = 20 }
  # would make b a backup MX.
  servers = [server.a, server.b]
}

# Lab passwords: lab-alice-password and lab-bob-password (as examples/local).
user "alice@example.test" {
  name          = "Alice (nodes)"
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$UeSV5v4pRDM98iMYybgzlw$uJxSGKfVS7hCRQQqAKRIqHwmZPaZMYJKdD0YoceRU1I"
  aliases       = ["postmaster@example.test", "abuse@example.test"]
}

user "bob@example.test" {
  name          = "Bob (nodes)"
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$qre63COCo+TU05VA33fi3Q$aIjCjAD7NKgALicGapaToJcekprVaqV9Z5EyZMrsZgQ"
}
