package inbound

import "testing"

// TestUnsigned: the DKIM verifier is skipped only for a complete header
// without any DKIM-Signature field.
func TestUnsigned(t *testing.T) {
	tests := []struct {
		head string
		want bool
	}{
		{"From: a@example.test\r\nSubject: x\r\n\r\nbody\r\n", true},
		{"From: a@example.test\nSubject: x\n\nbody\n", true},
		{"\r\nbody\r\n", true},
		{"From: a@example.test\r\nDKIM-Signature: v=1; a=rsa-sha256;\r\n d=example.test\r\n\r\nbody\r\n", false},
		{"dkim-signature: v=1\r\n\r\n", false},
		{"DKIM-Signature : v=1\r\n\r\n", false},
		{"From: a@example.test\r\nSubject: the header goes on beyond what was read", false},
		{"From: a@example.test\r\nnot a field\r\nDKIM-Signature: v=1\r\n\r\n", false},
		{"From: a@example.test\r\n", false},
	}
	for _, tt := range tests {
		if got := unsigned([]byte(tt.head), scanFields([]byte(tt.head))); got != tt.want {
			t.Errorf("unsigned(%q) = %v, want %v", tt.head, got, tt.want)
		}
	}
}
