package mongostore

import "context"

// Ping asks the server to answer, for readiness checks.
func (r *Repository) Ping(ctx context.Context) error { return r.client.Ping(ctx, nil) }
