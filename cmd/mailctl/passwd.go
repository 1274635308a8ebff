package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/term"

	"github.com/mailctl/mailctl/server/auth"
)

func init() {
	register(&command{
		name:     "passwd",
		synopsis: "read a password and print its argon2id hash for password_hash",
		run:      runPasswd,
	})
}

// runPasswd reads a password, without echo and twice on a terminal, or as
// one line of standard input otherwise, and prints its argon2id PHC hash.
func runPasswd(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "passwd", "[< password-file]")
	setUsageFooter(fs, func(w io.Writer) {
		fmt.Fprintln(w, "Reads a password (without echo on a terminal, asked twice) and prints")
		fmt.Fprintln(w, "its argon2id hash for a user's password_hash attribute.")
	})
	if done, code := parseFlags(fs, args); done {
		return code
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
