package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const good = `{"version":1,"engine":"native","id":"job-42.rank_0","config":{"argv":["/bin/true"],"env":{"A":"1"}}}`

func TestDecodeAcceptsWellFormedEnvelope(t *testing.T) {
	e, err := Decode([]byte(good))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if e.Version != 1 || e.Engine != "native" || e.ID != "job-42.rank_0" {
		t.Fatalf("got %+v", e)
	}
	if !json.Valid(e.Config) || !bytes.HasPrefix(e.Config, []byte(`{"argv"`)) {
		t.Fatalf("config = %s", e.Config)
	}
	// Trailing whitespace (a newline from the writer) is not data.
	if _, err := Decode([]byte(good + "\n\t ")); err != nil {
		t.Fatalf("trailing whitespace rejected: %v", err)
	}
}

func TestDecodeRejectsMalformedEnvelopes(t *testing.T) {
	big := `{"version":1,"engine":"native","id":"x","config":{"pad":"` + strings.Repeat("a", MaxSize) + `"}}`
	cases := map[string]string{
		"empty":             ``,
		"garbage":           `not json`,
		"truncated":         good[:len(good)-3],
		"array":             `[1,2]`,
		"null":              `null`,
		"trailing object":   good + `{}`,
		"trailing garbage":  good + `x`,
		"version 0":         `{"version":0,"engine":"native","id":"x","config":{}}`,
		"version 2":         `{"version":2,"engine":"native","id":"x","config":{}}`,
		"version string":    `{"version":"1","engine":"native","id":"x","config":{}}`,
		"version float":     `{"version":1.5,"engine":"native","id":"x","config":{}}`,
		"unknown key":       `{"version":1,"engine":"native","id":"x","config":{},"policy":{}}`,
		"key case":          `{"Version":1,"engine":"native","id":"x","config":{}}`,
		"duplicate key":     `{"version":1,"engine":"native","id":"x","id":"y","config":{}}`,
		"duplicate nested":  `{"version":1,"engine":"native","id":"x","config":{"a":{"b":1,"b":2}}}`,
		"missing config":    `{"version":1,"engine":"native","id":"x"}`,
		"missing id":        `{"version":1,"engine":"native","config":{}}`,
		"config null":       `{"version":1,"engine":"native","id":"x","config":null}`,
		"config array":      `{"version":1,"engine":"native","id":"x","config":[]}`,
		"config string":     `{"version":1,"engine":"native","id":"x","config":"{}"}`,
		"engine empty":      `{"version":1,"engine":"","id":"x","config":{}}`,
		"engine path":       `{"version":1,"engine":"../oci","id":"x","config":{}}`,
		"engine upper":      `{"version":1,"engine":"OCI","id":"x","config":{}}`,
		"id dotdot":         `{"version":1,"engine":"native","id":"..","config":{}}`,
		"id traversal":      `{"version":1,"engine":"native","id":"../x","config":{}}`,
		"id slash":          `{"version":1,"engine":"native","id":"a/b","config":{}}`,
		"id leading dash":   `{"version":1,"engine":"native","id":"-rf","config":{}}`,
		"id nul":            `{"version":1,"engine":"native","id":"a\u0000b","config":{}}`,
		"id too long":       `{"version":1,"engine":"native","id":"` + strings.Repeat("a", 129) + `","config":{}}`,
		"invalid utf8":      "{\"version\":1,\"engine\":\"native\",\"id\":\"x\",\"config\":{\"a\":\"\xff\"}}",
		"oversized":         big,
		"deep nesting":      `{"version":1,"engine":"native","id":"x","config":{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}`,
		"unterminated deep": `{"version":1,"engine":"native","id":"x","config":{"a":` + strings.Repeat("[", 1000),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			e, err := Decode([]byte(in))
			if err == nil {
				t.Fatalf("Decode accepted %.80q: %+v", in, e)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestValidateIDBoundaries(t *testing.T) {
	ok := []string{"a", "0", "A.b_c-d", strings.Repeat("z", 128), "a..b"}
	bad := []string{"", ".", "..", ".hidden", "_x", "-x", "a/b", "a b", "a\nb", "ä", strings.Repeat("z", 129)}
	for _, id := range ok {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range bad {
		if err := ValidateID(id); err == nil {
			t.Errorf("ValidateID(%q) = nil, want error", id)
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	type cfg struct {
		Argv []string `json:"argv"`
	}
	e, err := New("native", "c1", cfg{Argv: []string{"/bin/sh", "-c", "echo hi"}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b, err := e.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(%s): %v", b, err)
	}
	var got cfg
	if err := DecodeConfig(d.Config, &got); err != nil {
		t.Fatalf("DecodeConfig: %v", err)
	}
	if len(got.Argv) != 3 || got.Argv[2] != "echo hi" {
		t.Fatalf("argv = %q", got.Argv)
	}
}

func TestEncodeRefusesWhatDecodeWouldReject(t *testing.T) {
	if _, err := New("native", "../x", map[string]int{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad id: err = %v", err)
	}
	if _, err := New("native", "x", []int{1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("array config: err = %v", err)
	}
	e := &Envelope{Version: Version, Engine: "native", ID: "x",
		Config: json.RawMessage(`{"pad":"` + strings.Repeat("a", MaxSize) + `"}`)}
	if _, err := e.Encode(); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized: err = %v", err)
	}
}

func TestDecodeConfigIsStrict(t *testing.T) {
	type cfg struct {
		A int `json:"a"`
	}
	var c cfg
	for _, in := range []string{`{"a":1,"b":2}`, `{"a":1,"a":2}`, `{"a":1} {}`, `[]`, `{"a":"x"}`} {
		if err := DecodeConfig(json.RawMessage(in), &c); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeConfig(%s) = %v, want ErrInvalid", in, err)
		}
	}
	if err := DecodeConfig(json.RawMessage(`{"a":7}`), &c); err != nil || c.A != 7 {
		t.Errorf("DecodeConfig valid = %v, %+v", err, c)
	}
}

// FuzzDecode: Decode never panics, and whatever it accepts survives a round trip unchanged.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"version":1,"engine":"oci","id":"a","config":{}}`))
	f.Add([]byte(`{"version":1,"engine":"oci","id":"a","config":{"x":[{"y":null}]}}`))
	f.Add([]byte(`{"version":1,"engine":"oci","id":"../a","config":{}}`))
	f.Add([]byte(`{"version":1,"engine":"oci","id":"a","config":{},"x":1}`))
	f.Add([]byte(`{"version":1,"engine":"oci","id":"a","config":{"a":1,"a":1}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		enc, err := e.Encode()
		if err != nil {
			t.Fatalf("accepted %q but cannot re-encode: %v", b, err)
		}
		e2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded %q rejected: %v", enc, err)
		}
		if e2.Version != e.Version || e2.Engine != e.Engine || e2.ID != e.ID {
			t.Fatalf("round trip changed %+v to %+v", e, e2)
		}
		var c1, c2 any
		if json.Unmarshal(e.Config, &c1) != nil || json.Unmarshal(e2.Config, &c2) != nil {
			t.Fatalf("config no longer parses")
		}
		j1, _ := json.Marshal(c1)
		j2, _ := json.Marshal(c2)
		if !bytes.Equal(j1, j2) {
			t.Fatalf("config changed: %s vs %s", j1, j2)
		}
	})
}
