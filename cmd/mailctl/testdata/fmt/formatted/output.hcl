# Already canonical: fmt changes nothing.
domain "example.test" {
  dns    = provider.zonefile.lab
  server = server.lab

  dmarc {
    policy = "none"
  }
}
