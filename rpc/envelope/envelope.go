// Package envelope holds the EngineConfig envelope: the one message the frontend sends to the
// starter, on an inherited fd, to say which engine runs which container.
//
// On the wire it is a single JSON object:
//
//	{"version":1,"engine":"native","id":"job-42","config":{...}}
//
// The starter decodes it from untrusted bytes (a user may hand-craft it and feed it straight to
// starter-suid), so Decode is strict: a size bound, valid UTF-8, exactly the four keys spelled
// as above (encoding/json alone would match them case-insensitively), no duplicate keys at any
// depth, no trailing data, the one version this build speaks, a well-formed engine name and
// container id, and a config that is a JSON object. The engine's own config is left raw; each
// engine decodes it with DecodeConfig, which applies the same strictness.
//
// Nothing here needs privileges; the package is pure Go and used by both sides.
package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Version is the envelope version this build writes and the only one it accepts.
const Version = 1

// MaxSize bounds an encoded envelope in bytes. The C starter reads at most this much from the
// config fd (KERR_CONFIG_MAX in starter-c/starter.h must match; a test checks it).
const MaxSize = 1 << 20

// ErrInvalid is wrapped by every error that rejects an envelope or an engine config.
var ErrInvalid = errors.New("invalid engine config")

// validName reports whether s is 1 to max bytes, first from first, the rest from rest.
// (A loop rather than a regexp: every starter checks these, and compiling regexps at start
// is a measurable part of a container's start.)
func validName(s string, max int, first, rest func(c byte) bool) bool {
	if len(s) == 0 || len(s) > max || !first(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !rest(s[i]) {
			return false
		}
	}
	return true
}

func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlnum(c byte) bool { return isLower(c) || isDigit(c) || (c >= 'A' && c <= 'Z') }

// idRe: ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$
func validID(id string) bool {
	return validName(id, 128, isAlnum, func(c byte) bool { return isAlnum(c) || c == '_' || c == '.' || c == '-' })
}

// ^[a-z][a-z0-9-]{0,31}$
func validEngine(name string) bool {
	return validName(name, 32, isLower, func(c byte) bool { return isLower(c) || isDigit(c) || c == '-' })
}

// Envelope is a decoded EngineConfig.
type Envelope struct {
	Version int    `json:"version"`
	Engine  string `json:"engine"`
	// ID names the container; it may become part of a path (/run/kerr/<id>), so it is checked
	// with ValidateID before anyone builds one from it.
	ID string `json:"id"`
	// Config is the engine's own configuration, a JSON object, decoded by the engine.
	Config json.RawMessage `json:"config"`
}

// New builds a version-1 envelope whose config is cfg marshalled to JSON, and validates it.
func New(engine, id string, cfg any) (*Envelope, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: marshal %s config: %w", ErrInvalid, engine, err)
	}
	e := &Envelope{Version: Version, Engine: engine, ID: id, Config: raw}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// ValidateID reports whether id is an acceptable container id: 1 to 128 characters from
// [A-Za-z0-9_.-], not starting with '.', '_' or '-' (so never "..", a hidden name or a flag).
func ValidateID(id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: container id %q: want 1-128 characters [A-Za-z0-9_.-], starting with a letter or digit", ErrInvalid, id)
	}
	return nil
}

// Validate checks the fields of e: version, engine name, id, and that Config is one JSON
// object with no duplicate keys.
func (e *Envelope) Validate() error {
	if e.Version != Version {
		return fmt.Errorf("%w: version %d, this starter speaks version %d", ErrInvalid, e.Version, Version)
	}
	if !validEngine(e.Engine) {
		return fmt.Errorf("%w: engine name %q: want [a-z][a-z0-9-]{0,31}", ErrInvalid, e.Engine)
	}
	if err := ValidateID(e.ID); err != nil {
		return err
	}
	if err := checkObject(e.Config, nil); err != nil {
		return fmt.Errorf("%w: config: %w", ErrInvalid, err)
	}
	return nil
}

// Encode validates e and returns its wire form.
func (e *Envelope) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalid, len(b), MaxSize)
	}
	return b, nil
}

// Decode parses and validates an envelope from untrusted bytes.
func Decode(b []byte) (*Envelope, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalid, len(b), MaxSize)
	}
	if err := checkObject(b, topKeys); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var e Envelope
	if err := strictUnmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// DecodeConfig decodes an engine's raw config into v with the envelope's strictness: one JSON
// object, valid UTF-8, no duplicate keys, no fields v does not have, no trailing data.
// encoding/json still matches field names case-insensitively, so engines should not define
// two fields whose names differ only in case.
func DecodeConfig(raw json.RawMessage, v any) error {
	if err := checkObject(raw, nil); err != nil {
		return fmt.Errorf("%w: config: %w", ErrInvalid, err)
	}
	if err := strictUnmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: config: %w", ErrInvalid, err)
	}
	return nil
}

var topKeys = map[string]bool{"version": true, "engine": true, "id": true, "config": true}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// frame is one open object or array while checkObject walks a document.
type frame struct {
	keys  map[string]bool // keys seen so far; nil for an array
	isKey bool            // in an object: the next token is a key (or the closing brace)
}

// checkObject checks that b is valid UTF-8 holding exactly one JSON object with no duplicate
// keys at any depth. If want is not nil, the outer object must have exactly the keys in want.
// It walks tokens with an explicit stack, so deep nesting cannot exhaust the goroutine stack.
func checkObject(b []byte, want map[string]bool) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return eofIsUnexpected(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	outer := &frame{keys: map[string]bool{}, isKey: true}
	stack := []*frame{outer}
	for len(stack) > 0 {
		tok, err := dec.Token()
		if err != nil {
			return eofIsUnexpected(err)
		}
		top := stack[len(stack)-1]
		if top.keys != nil && top.isKey {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
				valueDone(stack)
				continue
			}
			k, ok := tok.(string)
			if !ok { // the decoder reports this itself; be safe anyway
				return errors.New("object key is not a string")
			}
			if top.keys[k] {
				return fmt.Errorf("duplicate key %q", k)
			}
			if top == outer && want != nil && !want[k] {
				return fmt.Errorf("unknown key %q", k)
			}
			top.keys[k] = true
			top.isKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}, isKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone(stack)
		default:
			valueDone(stack)
		}
	}
	for k := range want {
		if !outer.keys[k] {
			return fmt.Errorf("missing key %q", k)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// valueDone notes that a value has ended: if it sat in an object, a key comes next.
func valueDone(stack []*frame) {
	if len(stack) > 0 && stack[len(stack)-1].keys != nil {
		stack[len(stack)-1].isKey = true
	}
}

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
