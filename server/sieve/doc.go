// Package sieve parses, validates and runs Sieve mail filtering scripts
// (RFC 5228) with the extensions fileinto, envelope, imap4flags (RFC 5232),
// copy (RFC 3894), body (RFC 5173), variables (RFC 5229), relational
// (RFC 5231), subaddress (RFC 5233), date (RFC 5260), vacation (RFC 5230),
// reject and ereject (RFC 5429), and the comparators i;octet,
// i;ascii-casemap and i;ascii-numeric.
//
// Why a package of our own: no maintained Go Sieve library is served by the
// module proxy this project builds from (github.com/foxcpp/go-sieve is not
// served, and no other one is listed), so the interpreter is written here.
//
// A script is compiled once (Compile) into a tree of checked commands: the
// parser stops at the first syntax error, the validator then reports every
// error it finds, each as a single line "NAME:LINE:COL: message". Running a
// compiled script on a message (Script.Run) never touches the outside
// world: it returns the actions to carry out (keep, fileinto, redirect,
// discard, reject, vacation) and the caller performs them. Every run is
// bounded by Limits (steps, redirects, variable sizes), and compilation by
// the script size and nesting depth, so hostile scripts and messages cannot
// make it hang or grow without bound.
package sieve
