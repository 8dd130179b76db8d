package runtimespec

import (
	"encoding/json"
	"fmt"

	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
)

// imageConfig is the part of an OCI image config that config.json is made from. Only these
// fields are decoded, so that a malformed field kerr does not use (a "created" time, the
// history) cannot stop an otherwise good image from running.
type imageConfig struct {
	OS     string                `json:"os"`
	Config imagespec.ImageConfig `json:"config"`
}

// parseImageConfig decodes raw; nil or empty raw is no config at all.
func parseImageConfig(raw []byte) (*imageConfig, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var img imageConfig
	if err := json.Unmarshal(raw, &img); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	if img.OS != "" && img.OS != "linux" {
		return nil, fmt.Errorf("image config: the image is for os %q, not linux", img.OS)
	}
	return &img, nil
}
