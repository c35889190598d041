package router

// ReadConnRoute binds each session to one server, chosen at login by
// router.target (MaxScale's readconnroute); statements are not parsed to be
// routed.
type ReadConnRoute struct{}

func (ReadConnRoute) Classifies() bool { return false }
func (ReadConnRoute) Movable() bool    { return false }

// Route sends every statement to the session's one connection.
func (ReadConnRoute) Route(Situation, Statement, *Class) Decision {
	return Decision{To: ToPrimary, Reason: ReasonConnection}
}
