package identity

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/password"
)

// ImportLine is one user of an import, with where it came from (a line
// number) for the report.
type ImportLine struct {
	Line int
	User auth.ImportedUser
}

// LineError is what is wrong with one line of an import.
type LineError struct {
	Line int
	Err  error
}

func (e LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// ImportError lists every bad line of an import; nothing was written.
type ImportError struct{ Lines []LineError }

func (e *ImportError) Error() string {
	msgs := make([]string, len(e.Lines))
	for i, l := range e.Lines {
		msgs[i] = l.Error()
	}
	return fmt.Sprintf("%d bad line(s), nothing imported:\n%s", len(e.Lines), strings.Join(msgs, "\n"))
}

func (e *ImportError) Unwrap() error { return auth.ErrInvalidInput }

// Import brings users with the password hashes another system made
// (Django's, bcrypt's, argon2's: see password.Check), all or nothing: every
// line is checked first, and one bad line — a name out of bounds, a hash
// in no known format or with a work factor that would let a crafted hash
// burn CPU, the same user twice — fails the whole import with an
// *ImportError that names every bad line. An existing user is skipped, or
// with update replaced (and its sessions ended). With dryRun nothing is
// written and the result says what the import would do. No hash is
// computed here: each is verified, and upgraded to argon2id, at its
// user's first login.
func (s *Service) Import(ctx context.Context, lines []ImportLine, update, dryRun bool) (auth.ImportResult, error) {
	var bad []LineError
	seen := make(map[[2]string]int, len(lines))
	users := make([]auth.ImportedUser, 0, len(lines))
	for _, l := range lines {
		u := l.User
		err := ValidateName("deviceId", u.DeviceID)
		if err == nil {
			err = ValidateName("username", u.Username)
		}
		if err == nil {
			err = password.Check(u.PasswordHash)
		}
		if err == nil {
			key := [2]string{u.DeviceID, u.Username}
			if first, dup := seen[key]; dup {
				err = fmt.Errorf("user %s on device %s is on line %d already", u.Username, u.DeviceID, first)
			} else {
				seen[key] = l.Line
			}
		}
		if err != nil {
			bad = append(bad, LineError{Line: l.Line, Err: err})
			continue
		}
		users = append(users, u)
	}
	if len(bad) > 0 {
		return auth.ImportResult{}, &ImportError{Lines: bad}
	}
	now := s.now()
	rec := auth.Recording(ctx, auth.Event{Time: now, Type: auth.EventUserImported})
	res, err := s.store.ImportUsers(rec, users, update, !dryRun, now)
	if err != nil {
		return auth.ImportResult{}, fmt.Errorf("import: %w", err)
	}
	if !dryRun {
		s.log.Info("users imported", zap.Int("imported", res.Imported), zap.Int("updated", res.Updated), zap.Int("skipped", res.Skipped))
	}
	return res, nil
}
