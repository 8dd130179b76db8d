package starterc

// #include "starter.h"
import "C"

import "unsafe"

// TakeConfig returns a copy of the bytes stage 0 read from the config fd, and has C wipe and
// free its buffer; later calls return nil. The bytes are untrusted. Privileges: memory only.
func TakeConfig() []byte {
	n := int(C.kerr_stage0.config_len - C.kerr_stage0.config_off)
	if C.kerr_stage0.config == nil {
		return nil
	}
	b := make([]byte, n+1) // +1: never a zero-length slice, so &b[0] is valid
	got := C.kerr_stage0_take_config((*C.uchar)(unsafe.Pointer(&b[0])), C.size_t(n))
	return b[:int(got)]
}
