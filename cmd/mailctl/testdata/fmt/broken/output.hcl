domain "example.org" {
  dns = provider.cloudflare.main
  server = 
}
