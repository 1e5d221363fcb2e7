package readmodel

import (
	"errors"
	"time"
)

// Generation says which generation of the read model is active. A generation
// is one complete copy of the read model in its own collection (a table in
// the embedded store), projected by its own durable consumer. Generation 0 is
// the original "connections" collection. Pending is the generation a replay
// is building (0: none); a crashed replay leaves it set, and the next replay
// resumes it. PendingOwner and PendingUntil are the replay's lease: one
// replay builds a generation at a time, and a crashed one's lease runs out.
// Every read-model store keeps one of these.
type Generation struct {
	Generation   int       `bson:"generation"`
	Collection   string    `bson:"collection"`
	Consumer     string    `bson:"consumer"`
	Pending      int       `bson:"pending,omitempty"`
	PendingOwner string    `bson:"pendingOwner,omitempty"`
	PendingUntil time.Time `bson:"pendingUntil,omitempty"`
	SwitchedAt   time.Time `bson:"switchedAt,omitempty"`
}

// ErrGenerationMoved is returned by a guarded change of the active
// generation that found another generation active, or another replay
// holding the lease.
var ErrGenerationMoved = errors.New("readmodel: the active read-model generation or its replay lease changed")
