# Five different mistakes, one per kind, for the diagnostics golden files.
provider "cloudflare" "main" {
  api_token = env("CF_TOKEN")
}

server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.256"
  ptr      = provider.cloudflare.main
  tls { acme_email = "admin@example.org" }
}

domain "example.org" {
  dns    = provider.ovh.us
  server = server.mx1
}

user "alice@example.com" {
  password_hash = "hunter2"
}
