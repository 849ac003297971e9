// std::unique_ptr for OpenSSL objects, freed by their own free function:
//   OpenSslPtr<X509_REQ, X509_REQ_free> req(X509_REQ_new());
// with aliases for the common ones. Functions OpenSSL defines as macros
// (the sk_*_free of STACK_OF) need a deleter of their own.
#pragma once

#include <memory>

#include "openssl/bio.h"
#include "openssl/evp.h"
#include "openssl/x509.h"

namespace varan {

template <auto kFree>
struct OpenSslFree {
  template <typename T>
  void operator()(T* p) const {
    kFree(p);
  }
};

template <typename T, auto kFree>
using OpenSslPtr = std::unique_ptr<T, OpenSslFree<kFree>>;

using BioPtr = OpenSslPtr<BIO, BIO_free>;
using X509Ptr = OpenSslPtr<X509, X509_free>;
using PkeyPtr = OpenSslPtr<EVP_PKEY, EVP_PKEY_free>;

}  // namespace varan
