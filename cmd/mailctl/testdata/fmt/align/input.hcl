provider "cloudflare" "main" {
api_token = env("CLOUDFLARE_API_TOKEN")
}

server "mx1" {
    hostname = "mx1.example.org"
  ipv4 = "203.0.113.10"
  ptr= provider.ovh.eu
  tls {
  acme_email="admin@example.org"
  }
}

domain "example.org" {
  dns = provider.cloudflare.main
  server = server.mx1
  spf     { include = ["amazonses.com","_spf.google.com"] }
}
