// Errors the server answers with, in OpenAI's shape: {"error": {"message", "type", "code"}}.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace straw::serve {

class HttpError : public std::runtime_error {
 public:
  HttpError(int status, std::string message, std::string type = {})
      : std::runtime_error(std::move(message)), status_(status), type_(std::move(type)) {
    if (type_.empty())
      type_ = status == 401   ? "authentication_error"
              : status == 404 ? "not_found_error"
              : status == 413 ? "invalid_request_error"
              : status == 503 ? "unavailable_error"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
  }
  int status() const { return status_; }
  const std::string& type() const { return type_; }

 private:
  int status_;
  std::string type_;
};

// Throws HttpError(status, the arguments streamed into one message).
template <class... Args>
[[noreturn]] void reject(int status, Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  throw HttpError(status, os.str());
}

}  // namespace straw::serve
