package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/term"

	"github.com/mailctl/mailctl/server/auth"
)

func init() {
	register(&command{
		name:     "passwd",
		synopsis: "read a password and print its argon2id hash for password_hash, or make an app password",
		run:      runPasswd,
	})
}

// runPasswd reads a password, without echo and twice on a terminal, or as
// one line of standard input otherwise, and prints its argon2id PHC hash.
func runPasswd(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "passwd", "[< password-file] | -app NAME [-scopes imap,smtp,dav]")
	app := fs.String("app", "", "make a random app password for the device `NAME` and print its app_password block")
	scopes := fs.String("scopes", strings.Join(auth.Scopes, ","), "with -app: the protocols the app password logs in to (`list` of imap, smtp, dav)")
	setUsageFooter(fs, func(w io.Writer) {
		fmt.Fprintln(w, "Reads a password (without echo on a terminal, asked twice) and prints")
		fmt.Fprintln(w, "its argon2id hash for a user's password_hash attribute.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "With -app NAME, reads nothing: draws a random app password (16 letters,")
		fmt.Fprintln(w, "shown once on standard error) and prints the app_password block that")
		fmt.Fprintln(w, "holds its hash on standard output, for the user's block.")
	})
	if done, code := parseFlags(fs, args); done {
		return code
	}
	scopesSet := false
	fs.Visit(func(f *flag.Flag) { scopesSet = scopesSet || f.Name == "scopes" })
	if *app != "" || scopesSet {
		if fs.NArg() > 0 {
			return errorf(e, "passwd -app takes no arguments besides its flags")
		}
		return runPasswdApp(e, *app, *scopes)
	}
	if fs.NArg() > 0 {
		return errorf(e, "passwd takes no arguments (a password on the command line would end up in the shell history); it reads standard input")
	}
	pw, err := readNewPassword(e)
	if err != nil {
		return errorf(e, "passwd: %v", err)
	}
	if err := ctx.Err(); err != nil {
		return errorf(e, "passwd: %v", err)
	}
	hash, err := auth.HashPassword(pw, auth.DefaultParams)
	if err != nil {
		return errorf(e, "passwd: hash the password: %v", err)
	}
	fmt.Fprintln(e.Stdout, hash)
	return exitOK
}

// runPasswdApp draws an app password for the device name, shows it on
// standard error and prints its app_password block on standard output
// (which may be appended to a configuration file: the password itself
// must not end up there).
func runPasswdApp(e *env, name, scopeList string) int {
	if name == "" {
		return errorf(e, "passwd: -scopes needs -app NAME")
	}
	if !auth.ValidAppPasswordName(name) {
		return errorf(e, "passwd: app password name %q: want 1 to 40 letters, digits, '.', '_' or '-'", name)
	}
	var scopes []string
	for _, s := range strings.Split(scopeList, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(auth.Scopes, s) {
			return errorf(e, "passwd: scope %q: want a comma-separated list of %s", s, strings.Join(auth.Scopes, ", "))
		}
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	pw, hash, err := auth.GenerateAppPassword()
	if err != nil {
		return errorf(e, "passwd: %v", err)
	}
	fmt.Fprintf(e.Stderr, "App password for %s: %s\n", name, pw)
	fmt.Fprintln(e.Stderr, "Type it in the device's account settings now: it is shown only once (spaces do not matter).")
	fmt.Fprintln(e.Stderr, "Put this block in the user's block and apply; delete the block to revoke it:")
	quoted := make([]string, len(scopes))
	for i, s := range scopes {
		quoted[i] = strconv.Quote(s)
	}
	fmt.Fprintf(e.Stdout, "app_password %s {\n  hash   = %s\n  scopes = [%s]\n}\n", strconv.Quote(name), strconv.Quote(hash), strings.Join(quoted, ", "))
	return exitOK
}

// readNewPassword returns the password typed twice on a terminal, or the
// first line of a non-terminal standard input.
func readNewPassword(e *env) (string, error) {
	if e.IsTerminal {
		fd, ok := e.Stdin.(interface{ Fd() uintptr })
		if !ok {
			return "", errors.New("standard input is a terminal without a file descriptor")
		}
		read := func(prompt string) (string, error) {
			fmt.Fprint(e.Stderr, prompt)
			b, err := term.ReadPassword(int(fd.Fd()))
			fmt.Fprintln(e.Stderr)
			if err != nil {
				return "", fmt.Errorf("read the password from the terminal: %w", err)
			}
			return string(b), nil
		}
		pw, err := read("Password: ")
		if err != nil {
			return "", err
		}
		if pw == "" {
			return "", errors.New("empty password refused")
		}
		again, err := read("Repeat password: ")
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", errors.New("the two passwords differ")
		}
		return pw, nil
	}
	line, err := bufio.NewReader(e.Stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", errors.New("empty password refused (standard input is empty)")
		}
		return "", fmt.Errorf("read the password from standard input: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if pw == "" {
		return "", errors.New("empty password refused")
	}
	return pw, nil
}
