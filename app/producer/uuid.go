package producer

import "crypto/rand"

// newUUID returns a random (version 4) UUID in the RFC 4122 / RFC 9562 text
// form, e.g. "0b6f4c5e-8d1a-4f3e-9c2b-5a7d1e0f3c4b": the idempotency id of one
// message.
func newUUID() string {
	var b [16]byte
	// crypto/rand.Read never returns an error (it aborts the program if the
	// operating system cannot supply randomness).
	_, _ = rand.Read(b[:])
	return formatUUIDv4(b)
}

// formatUUIDv4 sets the version (4) and variant (10xx) bits of b and formats
// it as 8-4-4-4-12 lowercase hex digits.
func formatUUIDv4(b [16]byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	var out [36]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hex[c>>4], hex[c&0x0f]
		j += 2
	}
	return string(out[:])
}
