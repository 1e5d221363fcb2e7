package httpapi

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
)

// MaxHeaderBytes bounds the request line and headers the server reads
// (http.Server.MaxHeaderBytes); net/http refuses more with a 431.
const MaxHeaderBytes = 64 << 10

// Listener wraps l so that the answers net/http writes by itself, before any
// handler runs, are in the API's error shape too. When the request line or
// headers cannot be parsed, or exceed MaxHeaderBytes, net/http (Go 1.26,
// net/http/server.go, conn.serve) writes one of these straight to the
// connection, in one Write, and closes it:
//
//	HTTP/1.1 431 Request Header Fields Too Large<errorHeaders>431 Request Header Fields Too Large
//	HTTP/1.1 400 Bad Request<errorHeaders>400 Bad Request
//	HTTP/1.1 400 Bad Request: missing required Host header<errorHeaders>...  (and 505, for a bad version)
//	HTTP/1.1 501 Not Implemented<errorHeaders>Unsupported transfer encoding
//
// with errorHeaders "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection:
// close\r\n\r\n"; and for an Expect other than 100-continue, an empty
// "HTTP/1.1 417 Expectation Failed" (no handler of ours answers 417). No
// handler can answer instead: none has run. The wrapped
// connection recognises exactly that form (no answer of a handler can match
// it: net/http sorts header names, so Connection never follows Content-Type,
// and adds Date) and writes the same status as JSON. A test over a real
// server (TestServerLevelErrorsAreJSON) fails if a Go release changes the
// form.
func Listener(l net.Listener) net.Listener { return errorShapeListener{l} }

type errorShapeListener struct{ net.Listener }

func (l errorShapeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &errorShapeConn{Conn: c}, nil
}

type errorShapeConn struct{ net.Conn }

const netHTTPErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

func (c *errorShapeConn) Write(p []byte) (int, error) {
	if out, ok := rewriteServerError(p); ok {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// rewriteServerError turns one of net/http's own error answers into the
// same status with a JSON error body; ok is false for anything else.
func rewriteServerError(p []byte) ([]byte, bool) {
	const proto = "HTTP/1.1 "
	if !bytes.HasPrefix(p, []byte(proto)) {
		return nil, false
	}
	end := bytes.Index(p, []byte(netHTTPErrorHeaders))
	expectFailed := bytes.HasPrefix(p, []byte(proto+"417 Expectation Failed\r\n")) && bytes.HasSuffix(p, []byte("\r\nContent-Length: 0\r\n\r\n"))
	if !expectFailed && (end < 0 || bytes.IndexByte(p[:end], '\n') >= 0 || end < len(proto)+3) {
		return nil, false
	}
	status, err := strconv.Atoi(string(p[len(proto) : len(proto)+3]))
	if err != nil || status < 400 || status > 599 {
		return nil, false
	}
	body := serverErrorBody(status)
	b, err := json.Marshal(body)
	if err != nil {
		return nil, false
	}
	var out bytes.Buffer
	out.WriteString(proto + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	out.WriteString("Content-Type: application/json; charset=utf-8\r\nConnection: close\r\n")
	out.WriteString("Content-Length: " + strconv.Itoa(len(b)) + "\r\n\r\n")
	out.Write(b)
	return out.Bytes(), true
}

// serverErrorBody is the error body of a status net/http answered itself.
// net/http's reason is not repeated: it is not part of any contract.
func serverErrorBody(status int) ErrorBody {
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		return ErrorBody{Code: CodeHeadersTooLarge, Title: "Request headers too large",
			Message: "The request line and headers must be at most " + strconv.Itoa(MaxHeaderBytes/1024) + " KiB."}
	case http.StatusBadRequest:
		return ErrorBody{Code: CodeProtocol, Title: "Malformed HTTP request",
			Message: "The request is not valid HTTP/1.1 (request line, Host header, header syntax or URL encoding)."}
	}
	return ErrorBody{Code: "REG-0" + strconv.Itoa(status), Title: http.StatusText(status),
		Message: "The server cannot process this request: " + http.StatusText(status) + "."}
}
