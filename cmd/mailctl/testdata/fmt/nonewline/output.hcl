variable "zone" {
  default = "example.org"
}
