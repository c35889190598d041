package lab

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

// loginsAtOnce is how many clients OpenSessions logs in, and QueryEach
// queries, at the same time: enough to keep a proxy busy, few enough that
// its accept queue never overflows.
const loginsAtOnce = 16

// OpenSessions logs n clients in with cfg, each its own go-sql-driver
// connection, and returns them open and idle; on an error it returns the
// sessions opened so far, for the caller to close.
func OpenSessions(ctx context.Context, cfg *mysql.Config, n int) ([]driver.Conn, error) {
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	var (
		mu    sync.Mutex
		conns = make([]driver.Conn, 0, n)
		errs  []error
	)
	eachOf(n, func(int) bool {
		if ctx.Err() != nil {
			return false
		}
		c, err := connector.Connect(ctx)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return false
		}
		conns = append(conns, c)
		return true
	})
	if err := errors.Join(errs...); err != nil {
		return conns, err
	}
	if len(conns) < n {
		return conns, fmt.Errorf("only %d sessions: %w", len(conns), ctx.Err())
	}
	return conns, nil
}

// QueryEach runs query on every one of conns and reads its rows.
func QueryEach(ctx context.Context, conns []driver.Conn, query string) error {
	var (
		mu   sync.Mutex
		errs []error
	)
	eachOf(len(conns), func(i int) bool {
		if ctx.Err() != nil {
			return false
		}
		if err := QueryConn(ctx, conns[i], query); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			return false
		}
		return true
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

// eachOf calls do for 0..n-1, loginsAtOnce at a time; a worker whose do
// returns false stops, so a failure ends the work soon.
func eachOf(n int, do func(i int) bool) {
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range loginsAtOnce {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if !do(i) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// QueryConn runs query on a driver connection (OpenSessions') and reads
// its rows, if any.
func QueryConn(ctx context.Context, c driver.Conn, query string) error {
	q, ok := c.(driver.QueryerContext)
	if !ok {
		return errors.New("driver connection cannot query")
	}
	rows, err := q.QueryContext(ctx, query, nil)
	if err != nil {
		return err
	}
	dest := make([]driver.Value, len(rows.Columns()))
	for {
		if err := rows.Next(dest); err != nil {
			rows.Close()
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// RSS is a process's resident memory (VmRSS of /proc/PID/status) in bytes.
func RSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// SettledRSS waits (up to 5s) until VmRSS changes by less than 1% over
// 200ms, and returns it.
func SettledRSS(pid int) (int64, error) {
	last, err := RSS(pid)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		<-tick.C
		now, err := RSS(pid)
		if err != nil {
			return 0, err
		}
		d := now - last
		if d < 0 {
			d = -d
		}
		if d*100 < last {
			return now, nil
		}
		last = now
	}
	return last, nil
}
