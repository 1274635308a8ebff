// Package contract is what the provisioner (plan/..., remote, cmd/mailctl
// apply and status) and the bundled server (server/..., mailctl serve)
// agree on, so that neither imports the other's implementation:
//
//   - the data layout: where a deployed server keeps its configuration and
//     data, and the files in the data directory that the provisioner reads
//     (layout.go);
//   - the control protocol: the control socket, its requests and the
//     command that prints the status (control.go);
//   - the status document the server reports and the provisioner decodes
//     (status.go);
//   - the DKIM selectors the server generates keys for and the provisioner
//     publishes, and the record format (dkim.go).
//
// The configuration file schema, which the provisioner writes and the
// server reads, is package server/config; it and the other shared leaves
// (server/auth for its address syntax, server/mtasts, server/authres) are
// the only server packages the provisioner may import
// (internal/archtest checks it).
//
// This package imports only the standard library and
// internal/formatversion.
package contract
