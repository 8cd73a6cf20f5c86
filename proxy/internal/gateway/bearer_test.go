package gateway

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// TestOversizedAuthorizationRefusedBeforeParsing: an Authorization header
// longer than MaxAuthorizationBytes is refused as it stands, before the token
// in it is decoded, so that the memory and CPU a request can make the token
// parser spend stay small and fixed. (The HTTP server's MaxHeaderBytes bounds
// the header itself; this bounds what is parsed.)
func TestOversizedAuthorizationRefusedBeforeParsing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		value   string
		wantErr error
	}{
		{"at the limit", "Bearer " + strings.Repeat("a", MaxAuthorizationBytes-len("Bearer ")), nil},
		{"one byte over", "Bearer " + strings.Repeat("a", MaxAuthorizationBytes-len("Bearer ")+1), auth.ErrInvalidToken},
		{"100 KB", "Bearer " + strings.Repeat("a.", 50<<10), auth.ErrInvalidToken},
		{"over the limit in trailing spaces", "Bearer abc" + strings.Repeat(" ", MaxAuthorizationBytes), auth.ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok, err := bearerToken(http.Header{"Authorization": {tc.value}})
			if tc.wantErr == nil {
				if err != nil || tok == "" {
					t.Fatalf("bearerToken = %d bytes, %v; want the token", len(tok), err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || tok != "" {
				t.Fatalf("bearerToken = %d bytes, %v; want %v before parsing", len(tok), err, tc.wantErr)
			}
		})
	}
}
