package refresh

// Every DNS provider kind mailctl ships registers itself.
import _ "github.com/mailctl/mailctl/providers/dns/all"
