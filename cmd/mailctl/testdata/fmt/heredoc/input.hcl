server "mx1" {
hostname="mx1.example.org"
  motd = <<EOT
  Indented text
    stays as it is.
EOT
}
