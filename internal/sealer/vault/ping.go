package vault

import (
	"context"
	"fmt"
)

// Ping checks that Vault answers and still accepts the token, with the
// cheapest authenticated call (token lookup-self, allowed by every token's
// default policy), for readiness checks. Callers cache its answer.
func (s *Sealer) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if _, err := s.client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		return fmt.Errorf("vault: token lookup: %w", err)
	}
	return nil
}
