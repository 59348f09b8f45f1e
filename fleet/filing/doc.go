// Package filing is the fleet's filing tracker for Art. 15 of the Measures (人脸识别技术应用安全管理办法):
// once face information of 100,000 persons is stored, the processor files (备案) with the provincial CAC
// within 30 working days, updates the filing within 30 working days of a material change, and cancels it
// within 30 working days of stopping face recognition.
//
// It has three parts. A working-day Calendar built from the State Council's holiday notices, shipped as
// data (calendar/*.json) and extendable at run time with a year file the operator drops in. A Sketch: the
// HyperLogLog sketch each device builds from its gallery's keyed subject hashes, which the controller
// merges into a count of distinct persons. And Evaluate: a pure function from that count, the dated filing
// records and today's date to the Status the dashboard, the API and the report show.
//
// It must never hold an identity. A sketch keeps register values derived from a second hash of the keyed
// subject hashes, never a hash itself, a subject reference, a template or an image; the tracker sees a
// count and dated records. It must
// also never pass off a guess as the official calendar: a deadline in a year whose holiday notice is not
// loaded is computed conservatively (earlier, never later) and carries a warning saying so.
package filing
