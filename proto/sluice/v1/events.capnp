# The body of an HTTP request with `encoding: capnp`: one batch of events,
# each already parsed, so a receiver reads fields without parsing JSON.
# Content-Type: application/x-capnp; one unpacked message (standard framing:
# segment table, then segments), compressed as `compression` says.
@0xb057a48fce434297;

struct Batch {
  events @0 :List(Event);
}

struct Event {
  union {
    # A JSON event, as a tree of values.
    json @0 :Value;
    # A line of text that is not JSON (raw syslog, say), as received.
    text @1 :Data;
  }
}

struct Value {
  union {
    null @0 :Void;
    bool @1 :Bool;
    # A JSON number that is an integer within the range of Int64.
    int @2 :Int64;
    # An integer above Int64's range (up to 2^64 - 1).
    uint @3 :UInt64;
    # Any other number.
    float @4 :Float64;
    text @5 :Text;
    list @6 :List(Value);
    # An object's members, in the order they were written.
    object @7 :List(Member);
  }
}

struct Member {
  name @0 :Text;
  value @1 :Value;
}
