# The users of example.org.
// A slash comment too.
user "alice@example.org" {
  name = "Alice Martin" # trailing comment
  /* block comment */
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0$a2V5"
  aliases = [
    "contact@example.org", # the public address
    "info@example.org",
  ]
  quota = "10GiB"
}

alias "postmaster@example.org" { to = ["alice@example.org"] }
alias "@example.org" { to = ["alice@example.org"] } # catch-all
