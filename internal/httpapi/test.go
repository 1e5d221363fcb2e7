package httpapi

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/connreg/registry/commands"
)

// Tester runs the test command of a stored connection.
type Tester interface {
	Handle(ctx context.Context, cmd commands.TestConnection) (commands.ProbeResult, error)
}

type testResponse struct {
	Status    string `json:"status"`
	Reason    string `json:"reason,omitempty"`
	Message   string `json:"message"`
	LatencyMs int64  `json:"latencyMs"`
}

func probeResponse(r commands.ProbeResult) testResponse {
	return testResponse{Status: r.Status, Reason: r.Reason, Message: r.Message, LatencyMs: r.Latency.Milliseconds()}
}

func (a *API) testStored(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.fail(c, err)
		return
	}
	res, err := a.Test.Handle(c.Request.Context(), commands.TestConnection{ID: id, Scope: scope(c), Origin: a.origin(c)})
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, probeResponse(res))
}

// testUnsaved tests a full create body without storing anything.
func (a *API) testUnsaved(c *gin.Context) {
	in, err := createInput(c)
	if err != nil {
		a.fail(c, err)
		return
	}
	res, err := commands.ProbeSpec(c.Request.Context(), a.Prober, in)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, probeResponse(res))
}
