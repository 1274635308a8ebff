package formatversion

import (
	"encoding/json"
	"testing"
)

func TestUnmarshal(t *testing.T) {
	tests := []struct {
		in         string
		want       Version
		compatible bool
		err        bool
	}{
		{`"1.0"`, "1.0", true, false},
		{`"1.3"`, "1.3", true, false},
		{`1`, "1.0", true, false}, // server.json and status before the string
		{`"2.0"`, "2.0", false, false},
		{`2`, "2.0", false, false},
		{`true`, "", false, true},
		{`""`, "", false, false},
	}
	for _, tc := range tests {
		var doc struct {
			V Version `json:"format_version"`
		}
		err := json.Unmarshal([]byte(`{"format_version":`+tc.in+`}`), &doc)
		if (err != nil) != tc.err || doc.V != tc.want || doc.V.Compatible() != tc.compatible {
			t.Errorf("%s: %q, compatible %v, err %v; want %q, %v, error %v", tc.in, doc.V, doc.V.Compatible(), err, tc.want, tc.compatible, tc.err)
		}
	}
	b, _ := json.Marshal(struct {
		V Version `json:"format_version"`
	}{Current})
	if string(b) != `{"format_version":"1.0"}` {
		t.Errorf("Marshal = %s", b)
	}
}
