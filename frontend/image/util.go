package image

import "runtime"

// sifArch is the architecture recorded in the SIF: the image's, else the host's.
func sifArch(arch string) string {
	if arch == "" {
		return runtime.GOARCH
	}
	return arch
}
