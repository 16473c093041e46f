"""The conversations both template facts scripts encode with the peers' own code (lf_ and swift_template_facts)."""

SINGLE = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}]
MULTI = [
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Spain?"},
    {"role": "assistant", "content": "Madrid, of course."},
    {"role": "user", "content": "Italy?"},
    {"role": "assistant", "content": "Rome."},
]
