package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/audit"
)

// Conn is one replayed session's connection to the target.
type Conn interface {
	// Query runs a statement with the text protocol.
	Query(q string) Outcome
	// Prepare prepares q; Execute runs it with the binary protocol
	// (preparing it first if the session has not); CloseStmt closes it.
	Prepare(q string) Outcome
	Execute(q string, args []any) Outcome
	CloseStmt(q string)
	UseDB(db string) Outcome
	Ping() Outcome
	// Broken: the connection was lost; the session opens another.
	Broken() bool
	Close()
}

// Dialer opens a session's connection in schema db.
type Dialer func(ctx context.Context, db string) (Conn, error)

// MySQLDialer connects to addr as user with go-mysql's client. readOnly
// makes each session's transactions read-only too (SET SESSION
// TRANSACTION READ ONLY): the server refuses a write --read-only let
// through.
func MySQLDialer(addr, user, password string, readOnly bool) Dialer {
	return func(ctx context.Context, db string) (Conn, error) {
		c, err := client.ConnectWithContext(ctx, addr, user, password, db, 10*time.Second)
		if err != nil {
			return nil, fmt.Errorf("connect to --target %s as %s (schema %q): %w; check the address, --user and the password (--password-file or $SLUICE_REPLAY_PASSWORD), and that the schema exists there", addr, user, db, err)
		}
		if readOnly {
			if _, err := c.Execute("SET SESSION TRANSACTION READ ONLY"); err != nil {
				c.Close()
				return nil, fmt.Errorf("--read-only: SET SESSION TRANSACTION READ ONLY on %s: %w", addr, err)
			}
		}
		return &mysqlConn{c: c, stmts: map[string]*client.Stmt{}}, nil
	}
}

type mysqlConn struct {
	c      *client.Conn
	stmts  map[string]*client.Stmt
	broken bool
}

// maxStatements bounds a session's prepared statements.
const maxStatements = 1024

func (m *mysqlConn) Query(q string) Outcome {
	start := time.Now()
	res, err := m.c.Execute(q)
	return m.outcome(res, err, start)
}

func (m *mysqlConn) Prepare(q string) Outcome {
	start := time.Now()
	if s := m.stmts[q]; s != nil {
		// Prepared again with the same text: the client's second handle.
		s.Close()
		delete(m.stmts, q)
	}
	if len(m.stmts) >= maxStatements {
		for k, s := range m.stmts {
			s.Close()
			delete(m.stmts, k)
			break
		}
	}
	s, err := m.c.Prepare(q)
	if err == nil {
		m.stmts[q] = s
	}
	return m.outcome(nil, err, start)
}

func (m *mysqlConn) Execute(q string, args []any) Outcome {
	s := m.stmts[q]
	if s == nil {
		if o := m.Prepare(q); o.ErrorCode != 0 {
			return o
		}
		s = m.stmts[q]
	}
	start := time.Now()
	res, err := s.Execute(args...)
	return m.outcome(res, err, start)
}

func (m *mysqlConn) CloseStmt(q string) {
	if s := m.stmts[q]; s != nil {
		s.Close()
		delete(m.stmts, q)
	}
}

func (m *mysqlConn) UseDB(db string) Outcome {
	start := time.Now()
	return m.outcome(nil, m.c.UseDB(db), start)
}

func (m *mysqlConn) Ping() Outcome {
	start := time.Now()
	return m.outcome(nil, m.c.Ping(), start)
}

func (m *mysqlConn) Broken() bool { return m.broken }

func (m *mysqlConn) Close() { m.c.Close() }

// crServerLost is the client's error code for a lost connection.
const crServerLost = 2013

func (m *mysqlConn) outcome(res *mysql.Result, err error, start time.Time) Outcome {
	o := Outcome{Duration: time.Since(start)}
	if err != nil {
		if me := myError(err); me != nil {
			o.ErrorCode, o.Error = me.Code, me.Message
		} else {
			o.ErrorCode, o.Error, m.broken = crServerLost, err.Error(), true
		}
		return o
	}
	if res == nil {
		return o
	}
	o.Affected = res.AffectedRows
	if rs := res.Resultset; rs != nil && len(rs.Fields) > 0 {
		o.Rows, o.Checked = int64(len(rs.RowDatas)), true
		rows := make([][]byte, len(rs.RowDatas))
		for i, r := range rs.RowDatas {
			rows[i] = r
		}
		o.Checksum = audit.ChecksumRows(rows)
	}
	res.Close()
	return o
}

// myError finds the server's error in err (go-mysql wraps it with
// pingcap/errors, which unwraps by Cause).
func myError(err error) *mysql.MyError {
	for err != nil {
		var me *mysql.MyError
		if errors.As(err, &me) {
			return me
		}
		c, ok := err.(interface{ Cause() error })
		if !ok || c.Cause() == err {
			return nil
		}
		err = c.Cause()
	}
	return nil
}
