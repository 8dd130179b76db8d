package native

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
)

// ReadInstance reads instance name's record from dir (as whoever calls it).
func ReadInstance(dir, name string) (*Instance, error) {
	if err := ValidInstanceName(name); err != nil {
		return nil, fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}
	f, err := os.OpenFile(filepath.Join(dir, name+".json"), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no instance %s (kerr instance list shows yours): %w", name, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("instance %s: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxInstanceRecord))
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", name, err)
	}
	var rec Instance
	if err := json.Unmarshal(data, &rec); err != nil || rec.PID <= 1 || rec.Name != name {
		return nil, fmt.Errorf("instance %s: its record is damaged: %w", name, errdefs.ErrInvalidImage)
	}
	return &rec, nil
}

