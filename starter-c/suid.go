//go:build suid

package starterc

// The suid build tag makes this binary starter-suid: the C stage then accepts being exec'd
// setuid root (any other starter refuses to run setuid).

// #cgo CFLAGS: -DKERR_SUID
import "C"
