package router

// Kind is what a statement is, as a firewall rule names it and the audit
// trail records it.
type Kind string

// Kinds of statement.
const (
	KindSelect      Kind = "select"
	KindInsert      Kind = "insert"
	KindUpdate      Kind = "update"
	KindDelete      Kind = "delete"
	KindReplace     Kind = "replace"
	KindDDL         Kind = "ddl"
	KindDCL         Kind = "dcl"
	KindSet         Kind = "set"
	KindShow        Kind = "show"
	KindUse         Kind = "use"
	KindTransaction Kind = "transaction"
	KindCall        Kind = "call"
	KindLoad        Kind = "load"
	KindExplain     Kind = "explain"
	KindOther       Kind = "other"
	// KindUnknown: the parser could not read the statement.
	KindUnknown Kind = "unknown"
	// KindMulti is a multi-statement query as a whole; its parts have
	// their own kinds.
	KindMulti Kind = "multi"
)

// Kinds lists every kind.
var Kinds = []Kind{KindSelect, KindInsert, KindUpdate, KindDelete, KindReplace, KindDDL, KindDCL, KindSet,
	KindShow, KindUse, KindTransaction, KindCall, KindLoad, KindExplain, KindOther, KindUnknown, KindMulti}
