; cimc instruction stream, format 2
.stream "huge"
.schedule pipelined
.arrays 0
.global 4294967295

.core 0 scratch=1
halt
