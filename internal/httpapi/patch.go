package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
)

// Updater runs the update command.
type Updater interface {
	Handle(ctx context.Context, cmd commands.UpdateConnection) (commands.Result, error)
}

// Deleter runs the delete command.
type Deleter interface {
	Handle(ctx context.Context, cmd commands.DeleteConnection) (commands.Result, error)
}

type patchRequest struct {
	ConfigName   *string         `json:"configName"`
	ProductName  json.RawMessage `json:"productName"`
	Type         *string         `json:"type"`
	Host         *string         `json:"host"`
	Port         json.RawMessage `json:"port"`
	DatabaseName *string         `json:"databaseName"`
	UserName     *string         `json:"userName"`
	Password     *string         `json:"password"`
	Schema       *string         `json:"schema"`
	SSL          json.RawMessage `json:"ssl"`
	Metadata     json.RawMessage `json:"metadata"`
}

func (r *patchRequest) patchInput() (domain.PatchInput, *domain.ValidationError) {
	var v domain.ValidationError
	in := domain.PatchInput{
		ConfigName:   r.ConfigName,
		Type:         r.Type,
		Host:         r.Host,
		DatabaseName: r.DatabaseName,
		UserName:     r.UserName,
		Schema:       r.Schema,
	}
	if len(r.ProductName) > 0 {
		v.Add("productName", domain.ViolationUnknownField, "cannot change")
	}
	if r.Password != nil {
		in.Password = []byte(*r.Password)
	}
	if present(r.Port) {
		if p, ok := parsePort(r.Port); ok {
			in.Port = &p
		} else {
			v.Add("port", domain.ViolationInvalid, "must be an integer between 1 and 65535")
		}
	}
	switch {
	case len(r.SSL) == 0:
	case string(r.SSL) == "null":
		in.RemoveSSL = true
	default:
		var s sslRequest
		dec := json.NewDecoder(strings.NewReader(string(r.SSL)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			v.Add("ssl", domain.ViolationBadValue, "must be an object with mode, ca, cert and key")
		} else {
			in.SSL = &domain.SSLInput{Mode: deref(s.Mode), CA: deref(s.CA), Cert: deref(s.Cert)}
			if s.Key != nil {
				in.SSL.Key = []byte(*s.Key)
			}
		}
	}
	if len(r.Metadata) > 0 {
		in.SetMetadata = true
		in.Metadata = decodeMetadata(r.Metadata, &v)
	}
	return in, &v
}

func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// parsePort accepts a JSON integer (not a string, not a fraction) in range.
func parsePort(raw json.RawMessage) (int, bool) {
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return 0, false
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, false
	}
	p, err := n.Int64()
	if err != nil || p < 1 || p > 65535 {
		return 0, false
	}
	return int(p), true
}

func (a *API) update(c *gin.Context) {
	id, version, err := target(c)
	if err != nil {
		a.fail(c, err)
		return
	}
	var req patchRequest
	violations := &domain.ValidationError{}
	if err := readJSONBody(c.Writer, c.Request, &req); err != nil && !errors.As(err, &violations) {
		a.fail(c, err)
		return
	}
	in, more := req.patchInput()
	violations.Merge(more)
	if len(violations.Fields) > 0 {
		a.fail(c, violations)
		return
	}
	res, err := a.Update.Handle(c.Request.Context(), commands.UpdateConnection{ID: id, Scope: scope(c), IfMatch: version, Input: in, Origin: a.origin(c)})
	if err != nil {
		a.fail(c, err)
		return
	}
	if res.Changed {
		a.Queries.NoteWrite(id, res.Connection.Version(), res.Sequence)
	}
	resp := fromAggregate(res.Connection)
	c.Header("ETag", etag(resp.version))
	c.JSON(http.StatusOK, resp)
}

func (a *API) remove(c *gin.Context) {
	id, version, err := target(c)
	if err != nil {
		a.fail(c, err)
		return
	}
	res, err := a.Delete.Handle(c.Request.Context(), commands.DeleteConnection{ID: id, Scope: scope(c), IfMatch: version, Origin: a.origin(c)})
	if err != nil {
		a.fail(c, err)
		return
	}
	a.Queries.NoteWrite(id, res.Connection.Version(), res.Sequence)
	c.Status(http.StatusNoContent)
}
