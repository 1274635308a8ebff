package auth_test

import (
	"errors"
	"testing"

	"github.com/mailctl/mailctl/server/auth"
)

func TestHashVerify(t *testing.T) {
	t.Parallel()
	p := auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	h, err := auth.HashPassword("correct horse", p)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := auth.VerifyPassword(h, "correct horse"); !ok || err != nil {
		t.Errorf("VerifyPassword(right) = %v, %v; want true, nil", ok, err)
	}
	if ok, err := auth.VerifyPassword(h, "wrong"); ok || err != nil {
		t.Errorf("VerifyPassword(wrong) = %v, %v; want false, nil", ok, err)
	}
	h2, _ := auth.HashPassword("correct horse", p)
	if h == h2 {
		t.Errorf("two hashes of one password are equal: salt not random")
	}
}

func TestParseHashRejects(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"",
		"plaintext",
		"$argon2i$v=19$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=16$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=65536,t=0,p=2$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=65536,t=3,p=2$!!$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0$",
	} {
		if _, _, _, err := auth.ParseHash(bad); !errors.Is(err, auth.ErrMalformedHash) {
			t.Errorf("ParseHash(%q) err = %v, want ErrMalformedHash", bad, err)
		}
	}
}
